"""Builders of libvirt XML documents, one small class per element kind (ElementTree, never string pasting).

Used by the libvirt drivers to describe domains, networks, pools, volumes and network filters, and by the
golden-file tests in tests/libvirt, which compare each builder's output with a committed document.
"""
