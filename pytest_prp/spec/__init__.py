"""What a PRP says: the model, its frontmatter and body, down to the markdown block scanner, and
the agent presets (pure: no git, no processes; reading the PRP's file, and the body summaries
kept in pytest's cache, are the only I/O).
"""
