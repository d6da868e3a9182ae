//! The workload's inputs: a generated C project (sources, headers, a Makefile with dependency
//! files, a static library and a program) and the script that unpacks and builds it inside the
//! container. Generated, so that nothing binary is committed and every machine builds the same.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Source files of the generated project (each compiled separately).
pub const UNITS: usize = 48;

/// Writes the project into `dir` (dir/proj).
pub fn write_project(dir: &Path) -> std::io::Result<()> {
    let p = dir.join("proj");
    fs::create_dir_all(p.join("src"))?;
    fs::create_dir_all(p.join("include/w"))?;
    let mut header = String::from("#ifndef W_H\n#define W_H\n#include <stdint.h>\n");
    for i in 0..UNITS {
        let _ = writeln!(header, "uint64_t w{i}(uint64_t x);");
    }
    header += "#endif\n";
    fs::write(p.join("include/w/w.h"), header)?;
    for i in 0..UNITS {
        // Each unit mixes its input with a constant and calls the previous unit: the program's
        // output depends on every object file.
        let prev = if i == 0 { String::from("x") } else { format!("w{}(x ^ {i}u)", i - 1) };
        let src = format!(
            "#include \"w/w.h\"\nstatic const char tag[] = \"unit {i}\";\n\
             uint64_t w{i}(uint64_t x) {{\n  uint64_t h = {prev} * 0x100000001b3ull;\n  \
             for (unsigned k = 0; k < sizeof tag; k++) h = (h ^ (unsigned char)tag[k]) * 0x100000001b3ull;\n  \
             return h + {i}u;\n}}\n"
        );
        fs::write(p.join(format!("src/w{i}.c")), src)?;
    }
    let last = UNITS - 1;
    fs::write(
        p.join("src/main.c"),
        format!(
            "#include <stdio.h>\n#include <inttypes.h>\n#include \"w/w.h\"\n\
             int main(void) {{\n  for (uint64_t x = 0; x < 4; x++) printf(\"%\" PRIx64 \"\\n\", w{last}(x));\n  return 0;\n}}\n"
        ),
    )?;
    let objs: Vec<String> = (0..UNITS).map(|i| format!("obj/w{i}.o")).collect();
    let makefile = format!(
        "CFLAGS = -O2 -Iinclude -MMD -MP\nOBJS = {}\n\
         prog: obj/main.o libw.a\n\t$(CC) -o $@ obj/main.o libw.a\n\
         libw.a: $(OBJS)\n\trm -f $@.tmp && ar rcD $@.tmp $(OBJS) && mv $@.tmp $@\n\
         obj/%.o: src/%.c | obj\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
         obj:\n\tmkdir -p obj\n\
         -include $(OBJS:.o=.d) obj/main.d\n",
        objs.join(" ")
    );
    fs::write(p.join("Makefile"), makefile)
}

/// What the container runs (as /in/work.sh): unpack a real tree and the project, build, run,
/// rebuild after touching a header (make's dependency files), then reshuffle the real tree the
/// way package builds do (copy, move, delete half, archive it again).
pub const SCRIPT: &str = r#"set -eu
# the host's GNU tools (bound at /usr; run by bash: busybox sh prefers its own applets)
export PATH=/usr/bin:/bin
export TMPDIR=/build/tmp
mkdir -p /build/tmp
cd /build
tar -xzf /in/tree.tar.gz
tar -xzf /in/proj.tar.gz
cd proj
make -j2 CC=gcc SHELL=/usr/bin/bash > /build/make1.log 2>&1
./prog > /build/prog.out
touch include/w/w.h
make -j2 CC=gcc SHELL=/usr/bin/bash > /build/make2.log 2>&1
./prog >> /build/prog.out
cd /build
cp -a tree tree.copy
mv tree.copy tree.moved
find tree.moved -name '*.pm' | sort | awk 'NR % 2 == 0' | xargs rm -f
find tree.moved -type f | sort | xargs cat > /build/tree.cat
tar -cf /build/tree.moved.tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner tree.moved
rm -rf tree.moved
ls /build/tmp | wc -l > /build/tmp.count
"#;
