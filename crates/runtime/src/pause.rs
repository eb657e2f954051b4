//! `skiff pause`: PID 1 of a pod sandbox. It holds the pod's namespaces open
//! while it lives, reaps any zombie handed to it, and exits on SIGTERM/SIGINT.

extern "C" fn on_child(_: libc::c_int) {}
extern "C" fn on_term(_: libc::c_int) {
    unsafe { libc::_exit(0) }
}

/// Run the pause loop forever. With `sandbox_hostname`, first make the
/// sandbox: new network, IPC and UTS namespaces named `hostname`, a session
/// of its own, then `ready` on stdout. Doing this here rather than in a
/// `pre_exec` hook lets the runtime spawn pause without forking itself (a
/// fork copies the agent's page tables and makes its memory copy-on-write,
/// which cost more than the rest of the spawn in a burst of pods).
pub fn main(sandbox_hostname: Option<&str>) -> ! {
    if let Some(host) = sandbox_hostname {
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
                eprintln!("skiff pause: unshare: {}", std::io::Error::last_os_error());
                libc::_exit(1);
            }
            let name: Vec<u8> = host.bytes().take(63).collect();
            libc::sethostname(name.as_ptr().cast(), name.len());
            libc::setsid();
            let ready = b"ready\n";
            libc::write(1, ready.as_ptr().cast(), ready.len());
            // Nothing more goes to the runtime's pipe.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                libc::dup2(null, 1);
                libc::close(null);
            }
        }
    }
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        // A handler (not SIG_IGN) so pause() wakes for each child exit.
        libc::signal(libc::SIGCHLD, on_child as *const () as libc::sighandler_t);
        loop {
            libc::pause();
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
    }
}
