"""Running a PRP's steps (literally or by an agent CLI) and its gates, and the context the hooks
receive.
"""
