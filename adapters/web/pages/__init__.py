"""The console's pages, one module per group; each has a ``router`` that adapters/web/mount.py mounts."""
