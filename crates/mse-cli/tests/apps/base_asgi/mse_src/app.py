"""An ASGI app with no framework: the base image brings only the server
(hypercorn) and the standard library."""

import json
import platform


async def reply(send, status, body):
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode())],
    })
    await send({"type": "http.response.body", "body": data})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await reply(send, 200, {"status": "ok"})
    elif scope["path"] == "/echo" and scope["method"] == "POST":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await reply(send, 200, {"length": len(body), "reversed": body[::-1].decode()})
    elif scope["path"] == "/":
        await reply(send, 200, {"python": platform.python_version()})
    else:
        await reply(send, 404, {"error": "not found"})
