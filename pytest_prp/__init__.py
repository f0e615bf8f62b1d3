"""pytest-prp: run batches of PRPs (Product Requirement Prompts) as a pytest run."""

__version__ = "0.1.0"
