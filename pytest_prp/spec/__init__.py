"""What a PRP says: the model, its frontmatter and body, down to the markdown block scanner (pure:
no git, no processes; reading the PRP's file is the only I/O).
"""
