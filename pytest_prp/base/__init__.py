"""Plain helpers with no knowledge of PRPs (ids' order, atomic JSON files, safe paths, the
repository's top, stop flags, agent CLIs' stream-json), and the names of a PRP's branches and
files.
"""
