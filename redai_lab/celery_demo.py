"""The lesson's Celery worker module: ``celery -A redai_lab.celery_demo worker``.

``redai_lab.queues.start_worker`` runs it with the broker URL in ``REDAI_LAB_CELERY_URL``.
"""

import os

from .errors import LabError
from .queues import CELERY_URL_ENV, demo_app

if CELERY_URL_ENV not in os.environ:
    raise LabError(f"Set {CELERY_URL_ENV}=redis://host:port/db (redai_lab.queues.start_worker does).")

app = demo_app(os.environ[CELERY_URL_ENV])
