"""`python -m ttfs_native ...` is the `ttfs-native` command."""
import sys

from .cli import main

sys.exit(main())
