"""The cluster: API server, storage, client, controllers, scheduler, kubelet, proxy, DNS, adm."""
