"""``python3 -m appliance.vpn.occtl``: the occtl-compatible tool."""

import sys

from . import main

sys.exit(main())
