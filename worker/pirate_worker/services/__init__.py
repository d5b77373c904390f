"""Domain services: content store, provider state, queues, reconciler, recorder."""
