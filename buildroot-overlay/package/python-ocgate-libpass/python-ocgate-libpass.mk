################################################################################
#
# python-ocgate-libpass
#
################################################################################

PYTHON_OCGATE_LIBPASS_VERSION = 1.9.4
PYTHON_OCGATE_LIBPASS_SOURCE = libpass-$(PYTHON_OCGATE_LIBPASS_VERSION).tar.gz
PYTHON_OCGATE_LIBPASS_SITE = https://files.pythonhosted.org/packages/source/l/libpass
PYTHON_OCGATE_LIBPASS_SETUP_TYPE = pep517
PYTHON_OCGATE_LIBPASS_LICENSE = BSD-3-Clause
PYTHON_OCGATE_LIBPASS_LICENSE_FILES = LICENSE
PYTHON_OCGATE_LIBPASS_DEPENDENCIES = host-python-hatchling

$(eval $(python-package))
