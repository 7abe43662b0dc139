"""The web console: server-rendered pages at `/`, on the management API's app and port (issue 20).

mount_console(app, admin_key) ─► /login (admin key) ─► signed session cookie ─► pages (api/console/pages/)
                                                                              └► ConsoleApi ─► /api/v1 (same app)
"""

from api.console.app import mount_console

__all__ = ["mount_console"]
