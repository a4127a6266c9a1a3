"""Controllers that converge the world to the API: Deployments, Jobs, CronJobs, GC, namespaces..."""
