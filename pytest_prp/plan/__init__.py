"""The dependency graph, stages, critical path and the plan views (pure), and the settings a run
was given.
"""
