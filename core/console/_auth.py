"""Who may use the console, and the cross-site request check of its POST actions.

The console has the admin API's access rule (:meth:`backbone.admin.AdminApi.authorize`):

- **without** ``http.admin_token``: clients on loopback only (403 else);
- **with** it: ``Authorization: Bearer <token>``, or the session cookie a browser
  gets from the login page (``POST /ui/login`` with the token). The cookie holds
  ``HMAC-SHA256(token, "backbone-console-session")``: it stays valid while the token
  does (changing ``http.admin_token`` logs every browser out), is ``HttpOnly`` and
  ``SameSite=Strict``, and never contains the token itself.

**Cross-site requests.** Every POST of the console carries a hidden ``csrf`` field:
``HMAC-SHA256(secret, who)``, where ``secret`` is random per gateway process and
``who`` the session cookie (or ``"loopback"``). Another site cannot read a console
page (same-origin policy), so it cannot know the value. A POST whose ``Origin``
header names another origin, or whose ``Sec-Fetch-Site`` says ``cross-site``, is
refused as well (403): :func:`backbone.httpapp.refuse_cross_site`, the admin API's
check too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

from backbone.admin import AdminApi
from backbone.httpapp import HttpError, refuse_cross_site

__all__ = ["COOKIE", "ConsoleAuth"]

COOKIE = "backbone_console"


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


class ConsoleAuth:
    """The console's access check and CSRF tokens (see the module docstring)."""

    def __init__(self, admin: AdminApi, token: str | None) -> None:
        self.admin = admin
        self.session = None if token is None else _mac(token.encode(), "backbone-console-session")
        self._secret = secrets.token_bytes(32)

    @property
    def needs_login(self) -> bool:
        """Whether a browser must log in with the admin token."""
        return self.session is not None

    def login(self, sent: str) -> str | None:
        """The session cookie value for the token ``sent``; ``None`` if it is wrong."""
        if self.session is None:
            return None
        expected = _mac(sent.strip().encode(), "backbone-console-session")
        return self.session if hmac.compare_digest(expected, self.session) else None

    def allowed(self, request: Request) -> bool:
        """Whether ``request`` may see the console (the admin API's rule, or the cookie)."""
        if self.session is not None:
            cookie = request.cookies.get(COOKIE, "")
            if cookie and hmac.compare_digest(cookie, self.session):
                return True
        try:
            self.admin.authorize(request)
        except HttpError:
            return False
        return True

    def check(self, request: Request) -> None:
        """:class:`HttpError` 401/403 unless ``request`` may see the console."""
        if not self.allowed(request):
            self.admin.authorize(request)  # raises the admin API's own 401/403

    def csrf(self, request: Request) -> str:
        """The ``csrf`` form value of this browser."""
        who = request.cookies.get(COOKIE) or "loopback"
        return _mac(self._secret, who)

    def check_post(self, request: Request, sent: str | None) -> None:
        """The checks of a console POST: access, same origin, the ``csrf`` form value."""
        self.check(request)
        refuse_cross_site(request)
        if sent is None or not hmac.compare_digest(sent, self.csrf(request)):
            raise HttpError(
                403, "missing or stale form token (csrf): reload the page and try again"
            )
