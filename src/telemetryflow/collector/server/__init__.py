"""The network edge: the OTLP gRPC receiver and the HTTP server (Starlette app, routes,
admission before a body is read, uvicorn's protocol with connection caps, the open-file
limit), key checks, and the OpenAPI document. It only calls the shared ``Pipeline``.
"""
