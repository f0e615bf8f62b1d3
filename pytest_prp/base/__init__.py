"""Plain helpers with no knowledge of PRPs (ids' order, atomic JSON files, safe paths, times as
ISO 8601, the repository's top, stop flags, agent CLIs' stream-json), and the names of a PRP's
branches, folders and files.
"""
