#!/bin/sh
# Serve /www on :8080 in the foreground; exec so the server gets SIGTERM directly.
exec httpd -f -p 8080 -h /www
