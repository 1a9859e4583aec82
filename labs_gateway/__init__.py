"""labs gateway: the OpenAI-compatible REST/SSE API over the core's gRPC contract.

It holds no model and never imports torch, transformers or pandas: it validates, translates
(labs_gateway.convert) and forwards. `create_app(settings)` builds the Starlette app;
`labs-gateway` (labs_gateway.server:main) serves it with uvicorn.
"""

from labs_gateway.app import create_app

__all__ = ["create_app"]
