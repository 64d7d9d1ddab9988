################################################################################
#
# python-ocgate-pam
#
################################################################################

PYTHON_OCGATE_PAM_VERSION = 2.1.0
PYTHON_OCGATE_PAM_SOURCE = python_pam-$(PYTHON_OCGATE_PAM_VERSION).tar.gz
PYTHON_OCGATE_PAM_SITE = https://files.pythonhosted.org/packages/source/p/python-pam
PYTHON_OCGATE_PAM_SETUP_TYPE = pep517
PYTHON_OCGATE_PAM_LICENSE = MIT
PYTHON_OCGATE_PAM_LICENSE_FILES = LICENSE
PYTHON_OCGATE_PAM_DEPENDENCIES = linux-pam host-python-poetry-core

$(eval $(python-package))
