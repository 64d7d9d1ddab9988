################################################################################
#
# ocgate
#
################################################################################

# Built from this repository (the BR2_EXTERNAL tree lives inside it).
OCGATE_VERSION = 0.1.0
OCGATE_SITE = $(BR2_EXTERNAL_OCGATE_PATH)/..
OCGATE_SITE_METHOD = local
OCGATE_SETUP_TYPE = setuptools
OCGATE_LICENSE = Proprietary
OCGATE_DEPENDENCIES = host-python-setuptools

# The units, sysctl drop-in and nftables ruleset are shared with the Debian image.
define OCGATE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -d $(TARGET_DIR)/usr/lib/systemd/system
	$(INSTALL) -m 0644 $(@D)/systemd/*.service $(TARGET_DIR)/usr/lib/systemd/system/
	$(INSTALL) -D -m 0644 $(@D)/systemd/ocgate-sysctl.conf \
		$(TARGET_DIR)/usr/lib/sysctl.d/60-ocgate.conf
	$(INSTALL) -D -m 0755 $(@D)/systemd/ocgate.nft $(TARGET_DIR)/etc/nftables.conf
endef

$(eval $(python-package))
