"""The app's routers. API_ROUTERS are mounted under /api/v1 behind the admin key; PUBLIC_ROUTERS at the root
(health checks; the console's pages later). A new resource adds its router to a list here."""

from api.routers import (
    companies,
    configs,
    health,
    imports,
    lifecycle_stages,
    lists,
    objects,
    property_definitions,
    segments,
    users,
    webhooks,
)

API_ROUTERS = [
    users.router,
    users.jobs_router,
    users.commands_router,
    property_definitions.router,
    property_definitions.company_router,
    imports.router,
    configs.router,
    configs.user_configs_router,
    lifecycle_stages.router,
    lists.router,
    segments.router,
    segments.user_segments_router,
    companies.router,
    companies.user_companies_router,
    webhooks.router,
    objects.router,
    objects.user_objects_router,
]
PUBLIC_ROUTERS = [health.router]
