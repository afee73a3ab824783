"""Task modules: each declares its tasks with ``@scheduler.task``; ``autodiscover`` imports them all."""
