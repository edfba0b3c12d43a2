"""Running and operating a stack: start and stop, pools and traffic, maintenance, first-run set-up."""
