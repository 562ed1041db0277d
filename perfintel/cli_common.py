"""What every ``perfintel`` subcommand that talks to a running server shares: the error
line, the options naming the server and the token, the bearer header."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
Url = Annotated[
    str,
    typer.Option("--url", envvar="PERFINTEL_URL", help="Base URL of a running perfintel."),
]
Token = Annotated[str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")]
DEFAULT_URL = "http://127.0.0.1:9470"


def fail(exc: Exception, *, code: int = 2) -> typer.Exit:
    """One line on stderr and the exit code: 2 for bad usage or settings, 1 for a failed operation."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(code)


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
