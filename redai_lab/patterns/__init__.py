"""What a service would import: the caching, session, rate-limit, lock and queue patterns, and the
data-structure helpers. These modules import only redis-py, the lab's errors and each other."""
