"""Model sources, loading, chat templates and the registry of served models."""
