//! Choosing the libvirt domain type: `kvm` only when KVM really runs a guest.
//!
//! `/dev/kvm` existing is not enough. On the machines this project is tested on, `/dev/kvm`
//! is PVM (`kvm_pvm`, KVM without hardware virtualisation): it creates VMs and even runs a
//! real-mode `hlt`, but it emulates an ordinary guest's 64-bit code one instruction at a
//! time (about 2 µs each, measured), so a Linux guest under QEMU never gets past its
//! decompressor. So `auto` runs a small guest the way a kernel runs: 64-bit long mode with
//! paging, a loop of [`PROBE_LOOPS`] iterations, then `hlt`. Real KVM finishes it in a few
//! milliseconds; it must halt within [`PROBE_TIMEOUT`], and KVM must report the halt.

use std::sync::mpsc;
use std::time::Duration;

use crate::config::DomainTypeChoice;

/// How long the probe guest may take to halt. Hardware-assisted KVM runs the loop in about
/// 10 ms even nested; instruction emulation needs about 20 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Iterations of the probe's `dec ecx; jnz` loop.
const PROBE_LOOPS: u32 = 10_000_000;

/// The domain type the VMs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    Kvm,
    Qemu,
}

impl DomainType {
    /// The value of `<domain type='...'>`.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

/// The choice, and why it was made (for the log and `--check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub domain_type: DomainType,
    pub reason: String,
}

/// Resolves the configured choice; `auto` probes KVM (up to [`PROBE_TIMEOUT`]).
pub fn decide(choice: DomainTypeChoice) -> Decision {
    match choice {
        DomainTypeChoice::Kvm => Decision { domain_type: DomainType::Kvm, reason: "configured".into() },
        DomainTypeChoice::Qemu => Decision { domain_type: DomainType::Qemu, reason: "configured".into() },
        DomainTypeChoice::Auto => match probe_kvm() {
            Ok(()) => Decision { domain_type: DomainType::Kvm, reason: "a test guest ran and halted under KVM".into() },
            Err(why) => Decision { domain_type: DomainType::Qemu, reason: format!("KVM does not work here: {why}") },
        },
    }
}

/// Runs the probe guest; `Err` says why KVM is not usable.
pub fn probe_kvm() -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    // The guest runs on its own thread because a broken KVM may never return from KVM_RUN;
    // such a thread is left behind (blocked in the kernel, holding its descriptors), which
    // costs less than hanging the daemon's start.
    let spawned = std::thread::Builder::new().name("kvm-probe".into()).spawn(move || {
        let _ = tx.send(kvm::run_probe_guest(PROBE_LOOPS));
    });
    if let Err(err) = spawned {
        return Err(format!("cannot start the probe thread: {err}"));
    }
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "a 64-bit test guest did not finish {PROBE_LOOPS} loop iterations within {PROBE_TIMEOUT:?}: \
             KVM emulates the guest instead of running it (as PVM does) or is stuck"
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the probe thread ended without an answer".into()),
    }
}

/// The raw KVM ioctls of the probe. Constants and layouts from `<linux/kvm.h>` (x86-64),
/// checked against the header with a C program when written.
mod kvm {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
    const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
    const KVM_RUN: libc::c_ulong = 0xAE80;
    const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
    const KVM_GET_SREGS: libc::c_ulong = 0x8138_AE83;
    const KVM_SET_SREGS: libc::c_ulong = 0x4138_AE84;
    const KVM_SET_REGS: libc::c_ulong = 0x4090_AE82;
    /// The only API version there has ever been.
    const KVM_API_VERSION: libc::c_int = 12;
    const KVM_EXIT_HLT: u32 = 5;
    const KVM_EXIT_SHUTDOWN: u32 = 8;
    const KVM_EXIT_FAIL_ENTRY: u32 = 9;
    const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
    /// `struct kvm_run`: `exit_reason` follows 8 bytes of flags and padding.
    const EXIT_REASON_OFFSET: usize = 8;

    /// Guest memory, at guest-physical 0: page tables at 0x1000 (PML4), 0x2000 (PDPT),
    /// 0x3000 (PD, one 2 MiB page mapping 0..2 MiB onto itself), code at 0x4000.
    const MEMORY_SIZE: usize = 0x8000;
    const PML4: usize = 0x1000;
    const PDPT: usize = 0x2000;
    const PD: usize = 0x3000;
    const CODE: usize = 0x4000;
    /// `mov ecx, imm32` (the loop count goes in bytes 1..5); `dec ecx`; `jnz -4`; `hlt`.
    const CODE_BYTES: [u8; 10] = [0xB9, 0, 0, 0, 0, 0xFF, 0xC9, 0x75, 0xFC, 0xF4];
    /// Page-table entry bits: present, writable; and page size (2 MiB) in the PD.
    const PTE_PRESENT_WRITABLE: u64 = 0x3;
    const PDE_LARGE_PAGE: u64 = 0x80;
    /// CR0: protection, monitor coprocessor, extension type, numeric error, paging.
    const CR0: u64 = 0x1 | 0x2 | 0x10 | 0x20 | 0x8000_0000;
    /// CR4: physical address extension (required by long mode).
    const CR4_PAE: u64 = 0x20;
    /// EFER: long mode enabled and active.
    const EFER_LME_LMA: u64 = 0x500;

    #[repr(C)]
    struct UserMemoryRegion {
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory_size: u64,
        userspace_addr: u64,
    }

    /// `struct kvm_segment` (24 bytes).
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Segment {
        base: u64,
        limit: u32,
        selector: u16,
        type_: u8,
        present: u8,
        dpl: u8,
        db: u8,
        s: u8,
        l: u8,
        g: u8,
        avl: u8,
        unusable: u8,
        padding: u8,
    }

    /// `struct kvm_dtable` (16 bytes).
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct DescriptorTable {
        base: u64,
        limit: u16,
        padding: [u16; 3],
    }

    /// `struct kvm_sregs` (312 bytes).
    #[repr(C)]
    struct Sregs {
        cs: Segment,
        ds: Segment,
        es: Segment,
        fs: Segment,
        gs: Segment,
        ss: Segment,
        tr: Segment,
        ldt: Segment,
        gdt: DescriptorTable,
        idt: DescriptorTable,
        cr0: u64,
        cr2: u64,
        cr3: u64,
        cr4: u64,
        cr8: u64,
        efer: u64,
        apic_base: u64,
        interrupt_bitmap: [u64; 4],
    }

    /// `struct kvm_regs` (144 bytes): 16 general registers, rip, rflags.
    #[repr(C)]
    struct Regs {
        general: [u64; 16],
        rip: u64,
        rflags: u64,
    }

    const _: () = assert!(std::mem::size_of::<UserMemoryRegion>() == 32);
    const _: () = assert!(std::mem::size_of::<Segment>() == 24);
    const _: () = assert!(std::mem::size_of::<Sregs>() == 312);
    const _: () = assert!(std::mem::size_of::<Regs>() == 144);

    /// A memory mapping, unmapped on drop.
    struct Mapping {
        addr: *mut libc::c_void,
        len: usize,
    }

    impl Mapping {
        fn new(len: usize, flags: libc::c_int, fd: libc::c_int, what: &str) -> Result<Mapping, String> {
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            // SAFETY: a fresh mapping placed by the kernel; checked for MAP_FAILED.
            let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
            if addr == libc::MAP_FAILED {
                return Err(os_error(&format!("mmap of {what}")));
            }
            Ok(Mapping { addr, len })
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is `len` readable and writable bytes, alive as long as self.
            unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: addr/len came from a successful mmap and are unmapped once.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }

    fn os_error(what: &str) -> String {
        format!("{what}: {}", std::io::Error::last_os_error())
    }

    /// An ioctl whose argument is a pointer to `arg` (or nothing, with `()`); returns its
    /// non-negative result.
    fn ioctl<T>(fd: &OwnedFd, request: libc::c_ulong, arg: Option<&mut T>, what: &str) -> Result<libc::c_int, String> {
        let pointer = arg.map_or(std::ptr::null_mut(), |a| a as *mut T);
        // SAFETY: each request used here takes either no argument or a pointer to the
        // #[repr(C)] struct mirroring its kernel type, which `T` is at every call site.
        let result = unsafe { libc::ioctl(fd.as_raw_fd(), request, pointer) };
        if result < 0 {
            return Err(os_error(what));
        }
        Ok(result)
    }

    fn owned(fd: libc::c_int) -> OwnedFd {
        // SAFETY: called only with a fresh descriptor returned by the kernel, owned by nobody.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Runs the probe guest: 64-bit long mode, `loops` iterations, `hlt`; `Ok` when KVM
    /// reports the halt.
    pub(super) fn run_probe_guest(loops: u32) -> Result<(), String> {
        // SAFETY: a valid C string literal.
        let fd = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("cannot open /dev/kvm"));
        }
        let kvm = owned(fd);
        let version = ioctl::<()>(&kvm, KVM_GET_API_VERSION, None, "KVM_GET_API_VERSION")?;
        if version != KVM_API_VERSION {
            return Err(format!("/dev/kvm speaks API version {version}, not {KVM_API_VERSION}"));
        }
        let vm = owned(ioctl::<()>(&kvm, KVM_CREATE_VM, None, "KVM_CREATE_VM")?);

        // Declared before the VM's users so that it is unmapped after them.
        let mut memory = Mapping::new(MEMORY_SIZE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, "guest memory")?;
        let bytes = memory.bytes();
        let entry = |table: &mut [u8], value: u64| table[..8].copy_from_slice(&value.to_le_bytes());
        entry(&mut bytes[PML4..], PDPT as u64 | PTE_PRESENT_WRITABLE);
        entry(&mut bytes[PDPT..], PD as u64 | PTE_PRESENT_WRITABLE);
        entry(&mut bytes[PD..], PTE_PRESENT_WRITABLE | PDE_LARGE_PAGE);
        let mut code = CODE_BYTES;
        code[1..5].copy_from_slice(&loops.to_le_bytes());
        bytes[CODE..CODE + code.len()].copy_from_slice(&code);
        let mut region = UserMemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEMORY_SIZE as u64,
            userspace_addr: memory.addr as u64,
        };
        ioctl(&vm, KVM_SET_USER_MEMORY_REGION, Some(&mut region), "KVM_SET_USER_MEMORY_REGION")?;

        let vcpu = owned(ioctl::<()>(&vm, KVM_CREATE_VCPU, None, "KVM_CREATE_VCPU")?);
        let run_size = ioctl::<()>(&kvm, KVM_GET_VCPU_MMAP_SIZE, None, "KVM_GET_VCPU_MMAP_SIZE")? as usize;
        if run_size < EXIT_REASON_OFFSET + 4 {
            return Err(format!("KVM_GET_VCPU_MMAP_SIZE answered {run_size} bytes"));
        }
        let mut run = Mapping::new(run_size, libc::MAP_SHARED, vcpu.as_raw_fd(), "the vCPU's kvm_run")?;

        // SAFETY: Sregs is plain integers, so all-zero is valid; KVM_GET_SREGS fills it.
        let mut sregs: Sregs = unsafe { std::mem::zeroed() };
        ioctl(&vcpu, KVM_GET_SREGS, Some(&mut sregs), "KVM_GET_SREGS")?;
        // Flat 64-bit code segment and flat data segments, as a kernel sets them up.
        let code_segment = Segment {
            base: 0,
            limit: 0xFFFF_FFFF,
            selector: 0x8,
            type_: 11,
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data_segment = Segment { selector: 0x10, type_: 3, db: 1, l: 0, ..code_segment };
        sregs.cs = code_segment;
        sregs.ds = data_segment;
        sregs.es = data_segment;
        sregs.fs = data_segment;
        sregs.gs = data_segment;
        sregs.ss = data_segment;
        sregs.cr3 = PML4 as u64;
        sregs.cr4 = CR4_PAE;
        sregs.cr0 = CR0;
        sregs.efer = EFER_LME_LMA;
        ioctl(&vcpu, KVM_SET_SREGS, Some(&mut sregs), "KVM_SET_SREGS (long mode)")?;
        // Bit 1 of rflags is reserved and must be set.
        let mut regs = Regs { general: [0; 16], rip: CODE as u64, rflags: 0x2 };
        ioctl(&vcpu, KVM_SET_REGS, Some(&mut regs), "KVM_SET_REGS")?;

        ioctl::<()>(&vcpu, KVM_RUN, None, "KVM_RUN")?;
        let exit = &run.bytes()[EXIT_REASON_OFFSET..EXIT_REASON_OFFSET + 4];
        let exit_reason = u32::from_ne_bytes([exit[0], exit[1], exit[2], exit[3]]);
        match exit_reason {
            KVM_EXIT_HLT => Ok(()),
            KVM_EXIT_INTERNAL_ERROR => Err("the test guest stopped with KVM_EXIT_INTERNAL_ERROR".into()),
            KVM_EXIT_FAIL_ENTRY => Err("the test guest could not be entered (KVM_EXIT_FAIL_ENTRY)".into()),
            KVM_EXIT_SHUTDOWN => Err("the test guest shut down instead of halting (KVM_EXIT_SHUTDOWN)".into()),
            other => Err(format!("the test guest exited with reason {other} instead of KVM_EXIT_HLT")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_types_are_taken_as_they_are() {
        assert_eq!(decide(DomainTypeChoice::Kvm).domain_type, DomainType::Kvm);
        assert_eq!(decide(DomainTypeChoice::Qemu).domain_type, DomainType::Qemu);
    }

    /// The probe always answers, within its bound, with a reason when it says no.
    #[test]
    fn auto_answers_within_the_bound() {
        let started = std::time::Instant::now();
        let decision = decide(DomainTypeChoice::Auto);
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
        assert!(!decision.reason.is_empty());
        if !std::path::Path::new("/dev/kvm").exists() {
            assert_eq!(decision.domain_type, DomainType::Qemu);
            assert!(decision.reason.contains("/dev/kvm"), "{}", decision.reason);
        }
    }

    /// On the project's machines `/dev/kvm` is PVM (module `kvm_pvm`), which runs a short
    /// 64-bit guest correctly but far too slowly for a real one: the probe's guest program
    /// must be right (a short run halts) and `auto` must still say `qemu`, with the reason.
    #[test]
    fn auto_picks_qemu_under_pvm() {
        if !std::path::Path::new("/sys/module/kvm_pvm").exists() {
            return;
        }
        assert_eq!(kvm::run_probe_guest(1000), Ok(()), "the probe guest itself must be valid");
        let decision = decide(DomainTypeChoice::Auto);
        assert_eq!(decision.domain_type, DomainType::Qemu, "{}", decision.reason);
        assert!(decision.reason.contains("did not finish"), "{}", decision.reason);
    }
}
