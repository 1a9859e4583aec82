"""The one place that converts OpenAI-style JSON to proto requests and proto responses back to
JSON; route handlers only call into here. One module per API family."""
