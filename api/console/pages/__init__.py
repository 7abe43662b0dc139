"""The console's pages, one module per area; each lists its routes in ROUTES."""

from __future__ import annotations

from starlette.requests import Request

from api.console.pages import admin, companies, configs, groups, imports, objects, people, profile, segments, webhooks


def page_routes() -> list:
    return [
        *people.ROUTES,
        *profile.ROUTES,
        *companies.ROUTES,
        *objects.ROUTES,
        *admin.ROUTES,
        *configs.ROUTES,
        *imports.ROUTES,
        *groups.ROUTES,
        *segments.ROUTES,
        *webhooks.ROUTES,
    ]


async def admin_nav(request: Request) -> list[dict[str, str]]:
    """Admin pages in the main navigation (only those whose APIs answer: admin.OPTIONAL_SECTIONS)."""
    return await admin.nav_items(request)
