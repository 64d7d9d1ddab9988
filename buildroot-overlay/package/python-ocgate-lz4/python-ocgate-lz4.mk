################################################################################
#
# python-ocgate-lz4
#
################################################################################

PYTHON_OCGATE_LZ4_VERSION = 4.4.5
PYTHON_OCGATE_LZ4_SOURCE = lz4-$(PYTHON_OCGATE_LZ4_VERSION).tar.gz
PYTHON_OCGATE_LZ4_SITE = https://files.pythonhosted.org/packages/source/l/lz4
PYTHON_OCGATE_LZ4_SETUP_TYPE = setuptools
PYTHON_OCGATE_LZ4_LICENSE = BSD-3-Clause
PYTHON_OCGATE_LZ4_LICENSE_FILES = LICENSE
PYTHON_OCGATE_LZ4_DEPENDENCIES = lz4 host-python-pkgconfig host-python-setuptools-scm
# link against Buildroot's liblz4 instead of the bundled copy
PYTHON_OCGATE_LZ4_ENV = PYLZ4_USE_SYSTEM_LZ4=1

$(eval $(python-package))
