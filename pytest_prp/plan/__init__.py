"""The dependency graph, stages, critical path and the plan views (pure); what ordering needs of
a PRP file, why a run found no PRP, and the settings a run was given.
"""
