"""`labs keys ...` and `labs usage`: the gateway's admin API (/admin/keys, /admin/usage) from the
terminal, with the admin key from LABS_ADMIN_KEY. Standard library HTTP only: the CLI does not need
the gateway's dependencies to manage a remote gateway."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.text import Text

from labs_cli.errors import CliError
from labs_cli.render import table

LIMIT_FLAGS = (("--rpm", "rpm", "requests per minute"), ("--tpm", "tpm", "tokens per minute"),
               ("--max-streams", "max_streams", "concurrent generation requests"),
               ("--day-tokens", "day_tokens", "token budget per UTC day (hard stop)"),
               ("--month-tokens", "month_tokens", "token budget per UTC month (hard stop)"))
UNITS = {"m": 60, "h": 3600, "d": 86400}


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys on a gateway: list, create, update, rotate, revoke")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every key (never a secret)")
    _gateway_flags(listing)
    listing.add_argument("--json", action="store_true", help="print the keys as JSON")
    for name, text in (("create", "a new key; its secret is printed once"), ("update", "change a key")):
        parser = actions.add_parser(name, help=text)
        _gateway_flags(parser)
        parser.add_argument("name")
        parser.add_argument("--owner", help="owner or team, for reports")
        parser.add_argument("--models", help="models the key may use, comma separated ('' : all)")
        parser.add_argument("--expires", metavar="WHEN", help="30d, 12h, a date (2027-01-31) or 'never'")
        for flag, dest, what in LIMIT_FLAGS:
            parser.add_argument(flag, dest=dest, metavar="N", help=f"{what} ('none': no limit of its own)")
    for name, text in (("rotate", "a new secret for the key (printed once); the old one stops"),
                       ("revoke", "stop the key on every gateway (within a second)")):
        parser = actions.add_parser(name, help=text)
        _gateway_flags(parser)
        parser.add_argument("name")

    usage = sub.add_parser("usage", help="usage per key and model from the gateway's store (or CSV)")
    _gateway_flags(usage)
    usage.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d or a unix time (default 24h)")
    usage.add_argument("--until", help="end: same forms as --since (default: now)")
    usage.add_argument("--key", help="one key's usage")
    usage.add_argument("--model", help="one model's usage")
    usage.add_argument("--bucket", choices=("minute", "hour", "day"), default="day", help="table rows per ...")
    usage.add_argument("--csv", metavar="FILE", help="write one line per request to FILE ('-': stdout)")
    usage.add_argument("--json", action="store_true", help="print the gateway's JSON answer")


def _gateway_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", metavar="URL", help="gateway base URL (default: http://<LABS_HOST>:<LABS_PORT>)")
    parser.add_argument("--admin-key", metavar="KEY", help="admin key (default: LABS_ADMIN_KEY)")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)


class AdminClient:
    def __init__(self, base_url: str, admin_key: str, timeout_s: float = 30.0):
        self.base = base_url.rstrip("/")
        self.admin_key = admin_key
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.admin_key:
            request.add_header("Authorization", f"Bearer {self.admin_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return answer.status, answer.read(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                message = json.loads(text)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = text.decode(errors="replace")[:200]
            raise CliError(f"gateway at {self.base}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"no gateway at {self.base} ({reason}); start one (`labs up`) or pass --gateway") from None

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self.call(method, path, body)[1])


def client_for(args: argparse.Namespace, settings: Any) -> AdminClient:
    url = args.gateway
    if not url:
        host = settings.gateway.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        url = f"http://{host}:{settings.gateway.port}"
    return AdminClient(url, args.admin_key if args.admin_key is not None else settings.gateway.admin_key)


def parse_when(text: str, now: float, *, future: bool) -> float | None:
    """'30m' / '12h' / '7d' (ago, or from now when `future`), a date or date-time (UTC), a unix time,
    or 'never' (None)."""
    text = text.strip()
    if text.lower() in ("never", "none"):
        return None
    if text[:-1].isdigit() and text[-1:] in UNITS:
        delta = int(text[:-1]) * UNITS[text[-1]]
        return now + delta if future else now - delta
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"cannot read {text!r} as a time: use 30m, 12h, 7d, 2027-01-31 or a unix time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def key_body(args: argparse.Namespace, creating: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name} if creating else {}
    if args.owner is not None:
        body["owner"] = args.owner
    if args.models is not None:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.expires is not None:
        when = parse_when(args.expires, time.time(), future=True)
        body["expires_at"] = None if when is None else int(when)
    for _, dest, _ in LIMIT_FLAGS:
        value = getattr(args, dest)
        if value is None:
            continue
        if value.lower() in ("none", "null", "default"):
            body[dest] = None
        elif value.isdigit():
            body[dest] = int(value)
        else:
            raise CliError(f"--{dest.replace('_', '-')}: a whole number or 'none'")
    if not creating and not body:
        raise CliError("nothing to change: give --owner, --models, --expires or a limit")
    return body


def run_keys(args: argparse.Namespace, settings: Any, console: Console) -> int:
    client = client_for(args, settings)
    action = args.keys_command
    if action == "list":
        keys = client.json("GET", "/admin/keys")["data"]
        if args.json:
            console.print_json(json.dumps(keys))
            return 0
        console.print(table(f"API keys on {client.base}", ("name", "status", "owner", "prefix", "models", "limits",
                                                           "expires", "source"),
                            [(k["name"], k["status"], k["owner"], k["prefix"], ", ".join(k["models"]) or "all",
                              _limits(k), _date(k["expires_at"]), k["source"]) for k in keys]))
        return 0
    name = urllib.parse.quote(args.name, safe="")
    if action == "create":
        key = client.json("POST", "/admin/keys", key_body(args, creating=True))
        return _show_secret(console, key, "created")
    if action == "update":
        key = client.json("PATCH", f"/admin/keys/{name}", key_body(args, creating=False))
        console.print(f"key {key['name']} updated: {_limits(key)}; models {', '.join(key['models']) or 'all'}; "
                      f"expires {_date(key['expires_at'])}")
        return 0
    if action == "rotate":
        return _show_secret(console, client.json("POST", f"/admin/keys/{name}/rotate"), "rotated")
    if action == "revoke":
        key = client.json("DELETE", f"/admin/keys/{name}")
        console.print(f"key {key['name']} revoked: every gateway refuses it within a second")
        return 0
    raise CliError(f"unknown keys action {action!r}")


def _show_secret(console: Console, key: dict[str, Any], what: str) -> int:
    console.print(f"key {key['name']} {what}. Its secret, shown only this once:", highlight=False)
    print(key["secret"])  # plain stdout, nothing else on the line: easy to capture
    return 0


def _limits(key: dict[str, Any]) -> str:
    parts = [f"{key[dest]} {label}" for dest, label in (("rpm", "rpm"), ("tpm", "tpm"), ("max_streams", "streams"),
                                                         ("day_tokens", "tok/day"), ("month_tokens", "tok/month"))
             if key.get(dest) is not None]
    return ", ".join(parts) or "defaults"


def _date(value: int | None) -> str:
    return "never" if value is None else datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run_usage(args: argparse.Namespace, settings: Any, console: Console) -> int:
    client = client_for(args, settings)
    now = time.time()
    since = parse_when(args.since, now, future=False) or 0.0
    query: dict[str, Any] = {"since": f"{since:.3f}", "bucket": args.bucket}
    if args.until:
        query["until"] = f"{parse_when(args.until, now, future=False) or now:.3f}"
    for name in ("key", "model"):
        if getattr(args, name):
            query[name] = getattr(args, name)
    if args.csv:
        query["format"] = "csv"
        _, data, _ = client.call("GET", "/admin/usage?" + urllib.parse.urlencode(query))
        if args.csv == "-":
            sys.stdout.write(data.decode())
        else:
            with open(args.csv, "wb") as out:
                out.write(data)
            lines = max(0, data.count(b"\n") - 1)
            console.print(f"{lines} requests written to {args.csv}")
        return 0
    usage = client.json("GET", "/admin/usage?" + urllib.parse.urlencode(query))
    if args.json:
        console.print_json(json.dumps(usage))
        return 0
    rows = []
    for name, entry in sorted(usage["keys"].items()):
        for model, t in sorted(entry["models"].items()):
            rows.append((name, model or "(default)", t["requests"], t["errors"], t["prompt_tokens"],
                         t["completion_tokens"], t["cached_tokens"], t["total_tokens"]))
    if not rows:
        console.print(Text(f"no usage since {_date(int(since))}", style="yellow"))
        return 0
    console.print(table(f"usage since {_date(int(since))} ({client.base})",
                        ("key", "model", "requests", "errors", "prompt", "completion", "cached", "total"), rows))
    return 0
