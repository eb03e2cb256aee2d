//! Test harness shared by the integration tests: temp dirs, free ports, waiting with deadlines, real peers (mosquitto, nginx, dnsmasq, dig).
