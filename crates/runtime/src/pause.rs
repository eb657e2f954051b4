//! `skiff pause`: PID 1 of a pod sandbox. It holds the pod's namespaces open
//! while it lives, reaps any zombie handed to it, and exits on SIGTERM/SIGINT.

extern "C" fn on_child(_: libc::c_int) {}
extern "C" fn on_term(_: libc::c_int) {
    unsafe { libc::_exit(0) }
}

/// Run the pause loop forever.
pub fn main() -> ! {
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
