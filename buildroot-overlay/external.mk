include $(sort $(wildcard $(BR2_EXTERNAL_OCGATE_PATH)/package/*/*.mk))
