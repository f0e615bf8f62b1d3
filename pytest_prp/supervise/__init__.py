"""Running one process safely: its group, limits, log, live output, and ending whatever it left
running; API rate limits recognised in an agent's output and waited out.
"""
