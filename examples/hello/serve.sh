#!/bin/sh
# Serve /www on :8080 in the foreground; exec so the server gets SIGTERM directly.
echo "hello: serving /www on :8080 ($(cat /www/greeting.txt))"
exec httpd -f -p 8080 -h /www
