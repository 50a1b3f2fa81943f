"""PostgreSQL read models built from the topics: the NotificationLog, its migrations, replay."""
