"""What the HTTP guards share: the client's address and a JSON refusal."""

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, error: str, message: str, headers: dict[str, str]
) -> None:
    await JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)(scope, receive, send)
