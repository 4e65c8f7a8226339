"""Infrastructure packages of the application (monitoring lives in ``infrastructure.monitoring``)."""
