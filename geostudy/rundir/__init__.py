"""The run folder: its layout (layout.py), the checks before a run uses it (folder.py), one run at a
time (lock.py), atomic writes (fsio.py), checksummed markers of finished work (integrity.py), the
manifest's hashes (manifest.py) and the disk space a run needs (diskspace.py). Nothing here knows
about models or analyses."""
