# What this site changes in the conf.py that `antsibull-docs sphinx-init` writes: scripts/docs/build-site.sh
# appends this file to it, so every name here replaces the generated one.
import os
import zlib

# docs/*.md are the guides on the forge and in the Galaxy tarball as they are: MyST reads them unchanged.
extensions = [*globals()["extensions"], "myst_parser"]
# GitHub's anchors (#cuts-the-session-lives-on-a-dead-one-is-ended) for the guides' links inside a page.
myst_heading_anchors = 3

# The collection's pages link to labels of the Ansible docs (ansible.builtin modules, the common return
# values). With no network here or in CI they come from a local inventory of exactly these labels; a label
# that is not listed still fails the build (nitpicky), as a typo would.
ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/devel/"
ANSIBLE_LABELS = {
    "action_plugins": ("plugins/action.html#action-plugins", "Action plugins"),
    "ansible_configuration_settings": (
        "reference_appendices/config.html#ansible-configuration-settings", "Ansible Configuration Settings"),
    "common_return_values": (
        "reference_appendices/common_return_values.html#common-return-values", "Return Values"),
    "ansible_collections.ansible.builtin.copy_module": (
        "collections/ansible/builtin/copy_module.html", "ansible.builtin.copy module"),
    "ansible_collections.ansible.builtin.template_module": (
        "collections/ansible/builtin/template_module.html", "ansible.builtin.template module"),
    "ansible_collections.ansible.builtin.template_lookup": (
        "collections/ansible/builtin/template_lookup.html", "ansible.builtin.template lookup"),
    "ansible_collections.ansible.builtin.user_module": (
        "collections/ansible/builtin/user_module.html", "ansible.builtin.user module"),
}


def _write_inventory(path, labels):
    """Write labels as a Sphinx objects.inv (format version 2), which intersphinx reads like a fetched one."""
    header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n" \
        "# The remainder of this file is compressed using zlib.\n"
    body = "".join(f"{name} std:label -1 {uri} {title}\n" for name, (uri, title) in sorted(labels.items()))
    with open(path, "wb") as inventory:
        inventory.write(header.encode() + zlib.compress(body.encode()))


_inventory = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ansible_devel.inv")
_write_inventory(_inventory, ANSIBLE_LABELS)
# Only the local inventory: no fetch is tried, so an offline build has nothing to warn about.
intersphinx_mapping = {"ansible_devel": (ANSIBLE_DOCS, _inventory)}
