"""python -m spark_cluster_cli: the same as the spark-cluster command."""

import sys

from . import main

sys.exit(main())
