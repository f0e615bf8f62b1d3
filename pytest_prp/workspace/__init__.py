"""Git: running it, the repository, worktree slots, the PRP's commit, merges and their checks, the
ledger, the run lock.
"""
