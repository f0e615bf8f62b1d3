"""Root conftest: pytest's own pytester fixture, for running pytest the way users do."""

pytest_plugins = ["pytester"]
