"""One blueprint per page of the admin UI (see appliance.webui.app for the wiring)."""
