# Sourced by packaging/vm-image/build: puts Debian packages (--with) into the image tree.
# See docs/vm-image.md, "Software under test in the image".
#
# What goes in, for each named package:
#   - all its files (documentation, manuals and locales left out);
#   - whole, the packages it depends on that come from the same source package (its split
#     parts: xrootd-server brings xrootd-server-plugins, libxrdserver3, ...), since plugins
#     are loaded with dlopen and no ELF header names them;
#   - every shared library its ELF files need (DT_NEEDED, followed to closure), taken from
#     the library packages it depends on (downloaded), or from this build host for packages
#     every Debian system has (Essential, or priority required or important);
#   - its postinst, run once in a chroot of the image with `configure ""` (a first install),
#     dependencies first, with stand-ins for adduser, addgroup, useradd, groupadd (system
#     users and groups are created, so daemons that refuse to run as root find their user)
#     and dpkg-statoverride, and no-ops for the systemd and dpkg helpers.
# Other dependencies (programs such as perl, logrotate, adduser itself) are left out and
# listed; name them in --with too when a script needs them.
#
# Needs: apt-get, apt-cache, dpkg-deb, readelf (binutils). Sets pkg_debs (the .debs used,
# for the content key) in resolve_packages; add_packages "$root" fills the image tree.

pkg_debs=()
pkg_whole=()
pkg_whole_debs=()
pkg_lib_debs=()
pkg_libs=()
pkg_left_out=()

# "name version arch source section base depends" for each package in $@ that apt knows, one
# line each, from one apt-cache call (each call costs half a second): base is 1 for packages
# every Debian system has (Essential, or priority required or important: taken from this
# build host, never downloaded), depends the first alternative of each Depends and
# Pre-Depends, without versions or :any, comma-separated.
pkg_info() {
    apt-cache show --no-all-versions "$@" 2>/dev/null | awk '
        function flush() {
            if (name != "") {
                deps = ""
                n = split(depends, parts, ",")
                for (i = 1; i <= n; i++) {
                    d = parts[i]; sub(/\|.*/, "", d); gsub(/\([^)]*\)/, "", d); sub(/:any/, "", d); gsub(/[ \t]/, "", d)
                    if (d != "") deps = deps (deps == "" ? "" : ",") d
                }
                base = (essential == "yes" || priority == "required" || priority == "important") ? 1 : 0
                print name, version, arch, (source == "" ? name : source), (section == "" ? "-" : section), base, (deps == "" ? "-" : deps)
            }
            name = version = arch = source = section = priority = essential = depends = ""
        }
        /^Package:/ {flush(); name = $2}
        /^Version:/ {version = $2}
        /^Architecture:/ {arch = $2}
        /^Source:/ {source = $2}
        /^Section:/ {section = $2}
        /^Priority:/ {priority = $2}
        /^Essential:/ {essential = $2}
        /^(Pre-)?Depends:/ {sub(/^[^:]*: /, ""); depends = depends (depends == "" ? "" : ",") $0}
        END {flush()}'
}

# Resolves the named packages ($@) into pkg_whole (named packages and their same-source
# parts) and pkg_libs (library packages the libraries may come from), and downloads them
# into $cache/debs (kept: a later build with the same versions downloads nothing).
resolve_packages() {
    local -A seen=() sources=() known=()
    local level=("$@") next p name version arch source section base deps d
    local infos
    infos=$(pkg_info "$@")
    for p in "$@"; do
        grep -q "^$p " <<<"$infos" || die "--with $p: no such package in apt's lists (apt-cache show $p; apt-get update?)"
    done
    while read -r name version arch source section base deps; do sources[$source]=1; done <<<"$infos"
    local whole_names=() lib_names=() whole_debs=() lib_debs=() deb
    while [ ${#level[@]} -gt 0 ]; do
        next=()
        local todo=()
        for p in "${level[@]}"; do
            [ -z "${seen[$p]:-}" ] || continue
            seen[$p]=1
            todo+=("$p")
        done
        [ ${#todo[@]} -gt 0 ] || break
        infos=$(pkg_info "${todo[@]}")
        known=()
        while read -r name version arch source section base deps; do
            [ -n "$name" ] || continue
            known[$name]=1
            deb=$cache/debs/${name}_${version//:/%3a}_${arch}.deb
            if [ -n "${sources[$source]:-}" ]; then
                whole_names+=("$name")
                whole_debs+=("$deb")
            elif [ "$base" = 1 ]; then
                continue
            elif [[ "$name" == lib* || "$section" == libs || "$section" == */libs ]]; then
                lib_names+=("$name")
                lib_debs+=("$deb")
            else
                pkg_left_out+=("$name")
                continue
            fi
            [ "$deps" = - ] || { IFS=, read -r -a d <<<"$deps"; next+=("${d[@]}"); }
        done <<<"$infos"
        for p in "${todo[@]}"; do
            [ -n "${known[$p]:-}" ] || log "note: $p is a virtual or missing package; left out"
        done
        level=("${next[@]}")
    done
    pkg_whole=("${whole_names[@]}")
    pkg_libs=("${lib_names[@]}")
    pkg_whole_debs=("${whole_debs[@]}")
    pkg_lib_debs=("${lib_debs[@]}")
    pkg_debs=("${whole_debs[@]}" "${lib_debs[@]}")
    local missing=() name
    for deb in "${pkg_debs[@]}"; do
        name=$(basename "$deb")
        [ -s "$deb" ] || missing+=("${name%%_*}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "downloading ${#missing[@]} packages into $cache/debs: ${missing[*]}"
        (cd "$cache/debs" && apt-get download -q "${missing[@]}" 2>&1 | grep -v 'unsandboxed as root' >&2) || true
        for p in "${pkg_debs[@]}"; do
            [ -s "$p" ] || die "apt-get download did not give $(basename "$p") (apt-get update? a mirror?)"
        done
    fi
    log "packages: ${pkg_whole[*]} (whole); libraries from: ${pkg_libs[*]:-none}"
    [ ${#pkg_left_out[@]} -eq 0 ] || log "left out (programs the packages depend on; name them in --with to include them): ${pkg_left_out[*]}"
}

# Unpacks .deb $1 into $2 (once, in the cache).
pkg_unpacked() {
    local dir=$cache/unpacked/$(basename "$1" .deb)
    if [ ! -e "$dir/.done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir/files" "$dir/control"
        dpkg-deb -x "$1" "$dir/files"
        dpkg-deb -e "$1" "$dir/control"
        touch "$dir/.done"
    fi
    echo "$dir"
}

# The sonames ELF file $1 needs (none for a file that is not ELF).
elf_needed() {
    { readelf -d "$1" 2>/dev/null || true; } | awk '$2 == "(NEEDED)" {gsub(/[][]/, "", $5); print $5}'
}

# Fills image tree $1 with the resolved packages.
add_packages() {
    local root=$1 deb dir i
    [ ${#pkg_whole[@]} -gt 0 ] || return 0
    # The named packages and their parts, whole (documentation aside). tar replaces what a
    # package file lands on (a busybox applet link).
    local postinsts=()
    for i in "${!pkg_whole[@]}"; do
        dir=$(pkg_unpacked "${pkg_whole_debs[$i]}")
        (cd "$dir/files" && tar cf - --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/info \
            --exclude=./usr/share/locale --exclude=./usr/share/lintian .) | tar xf - -C "$root"
        # Dependencies first, as dpkg configures them (found after the packages needing them).
        [ -f "$dir/control/postinst" ] && postinsts=("${pkg_whole[$i]}:$dir/control/postinst" "${postinsts[@]}")
    done
    # Shared libraries: every soname an ELF file in the tree needs and the tree lacks, from
    # the library packages or else from this host, until none is missing.
    local round=0 copied soname file lib rel sub f lib_dirs=() host_libs
    for deb in "${pkg_lib_debs[@]}"; do lib_dirs+=("$(pkg_unpacked "$deb")"); done
    host_libs=$(ldconfig -p)
    while :; do
        round=$((round + 1))
        [ $round -le 20 ] || die "shared library resolution did not settle after 20 rounds"
        copied=0
        while read -r file soname; do
            [ -n "$soname" ] || continue
            lib=
            for dir in "${lib_dirs[@]}"; do
                for rel in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
                    if [ -e "$dir/files/$rel/$soname" ]; then
                        lib=$dir/files/$rel/$soname; rel=/$rel/$soname
                        break 2
                    fi
                done
            done
            if [ -z "$lib" ]; then
                lib=$(awk -v s="$soname" '$1 == s && /x86-64/ {print $NF; exit}' <<<"$host_libs")
                [ -n "$lib" ] || die "$file needs $soname, which no package it depends on and nothing on this host provides"
                rel=$lib
            fi
            install -D -m 0755 "$(readlink -f "$lib")" "$root$rel"
            copied=$((copied + 1))
        done < <(missing_sonames "$root")
        [ $copied -gt 0 ] || break
    done
    # A library package whose library is in the image (from it, or the same file from this
    # host) brings its private folders too: what it dlopens (OpenSSL's ossl-modules, which
    # sss authentication in xrootd needs for Blowfish).
    for dir in "${lib_dirs[@]}"; do
        for sub in "$dir"/files/lib/x86_64-linux-gnu/*/ "$dir"/files/usr/lib/x86_64-linux-gnu/*/; do
            [ -d "$sub" ] || continue
            for f in "$(dirname "$sub")"/*.so*; do
                [ -e "$root/lib/x86_64-linux-gnu/$(basename "$f")" ] \
                    || [ -e "$root/usr/lib/x86_64-linux-gnu/$(basename "$f")" ] || continue
                rel=${sub#"$dir/files"}
                mkdir -p "$root$rel"
                cp -a "$sub." "$root$rel"
                break
            done
        done
    done
    # The build wrote ld.so.conf; the cache must now name the new libraries too.
    ldconfig -r "$root" 2>/dev/null || true
    run_postinsts "$root" "${postinsts[@]}"
}

# "FILE SONAME" for every soname an ELF file under $1 needs and no library folder of $1
# holds (by that name).
missing_sonames() {
    local root=$1
    find "$root" -type f \( -perm -u+x -o -name '*.so' -o -name '*.so.*' \) ! -path "$root/lib/modules/*" -print0 \
        | while IFS= read -r -d '' f; do
            elf_needed "$f" | while read -r soname; do
                [ -e "$root/lib/x86_64-linux-gnu/$soname" ] || [ -e "$root/usr/lib/x86_64-linux-gnu/$soname" ] \
                    || [ -e "$root/lib64/$soname" ] || [ -e "$root/lib/$soname" ] || [ -e "$root/usr/lib/$soname" ] \
                    || echo "${f#"$root"} $soname"
            done
        done | sort -u -k2,2
}

# Runs each "package:postinst" ($2...) in a chroot of image tree $1 (with bash: busybox's
# shell would run its own applets, such as its find, before the programs in PATH), as dpkg would after
# unpacking a first install (`configure ""`), with stand-ins for the user tools and
# dpkg-statoverride, and no-op dpkg/systemd helpers.
run_postinsts() {
    local root=$1 entry pkg script
    shift
    [ $# -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || die "--with: running the packages' postinst scripts needs root (chroot)"
    local shims=$root/run/xrdtest-build
    mkdir -p "$shims"
    install -m 0755 "$here/package-shims/adduser" "$here/package-shims/addgroup" "$here/package-shims/no-op" \
        "$here/package-shims/dpkg-statoverride" "$shims/"
    ln -s adduser "$shims/useradd"
    ln -s addgroup "$shims/groupadd"
    local helper
    for helper in systemctl deb-systemd-helper deb-systemd-invoke dpkg-maintscript-helper update-rc.d \
        invoke-rc.d dpkg-trigger ldconfig; do
        ln -s no-op "$shims/$helper"
    done
    for entry in "$@"; do
        pkg=${entry%%:*}
        script=${entry#*:}
        install -m 0755 "$script" "$shims/postinst"
        if chroot "$root" /usr/bin/env -i PATH=/run/xrdtest-build:/usr/sbin:/usr/bin:/sbin:/bin \
            DPKG_MAINTSCRIPT_PACKAGE="$pkg" DPKG_MAINTSCRIPT_NAME=postinst DEBIAN_FRONTEND=noninteractive \
            /bin/bash /run/xrdtest-build/postinst configure "" >"$work/postinst.log" 2>&1; then
            log "ran $pkg's postinst"
        else
            sed 's/^/    /' "$work/postinst.log" >&2
            die "$pkg's postinst failed in the image tree (output above)"
        fi
    done
    rm -rf "$shims"
}
