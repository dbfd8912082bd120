"""``python -m deconv_server``: same as the ``deconv-server`` command."""

import sys

from deconv_server.cli import main

sys.exit(main())
