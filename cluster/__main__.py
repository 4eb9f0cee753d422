"""`python -m cluster`: start the MagicQueue cluster (configuration from the environment)."""

import sys

from cluster.supervisor import main

sys.exit(main())
