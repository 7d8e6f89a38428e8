//! What the benchmarks share: the scenario shape they time.

/// A cluster of `n` engines named `{prefix}{n}-{i}`: three managers from five nodes on
/// (one below), an overlay, a global service, and the headline ping across hosts.
pub fn cluster_scenario(prefix: &str, n: usize, ingress: bool) -> String {
    let managers = if n >= 5 { 3 } else { 1 };
    let mut s = format!("name = \"{prefix}-{n}\"\ningress = {ingress}\n\n");
    for i in 1..=n {
        let role = if i <= managers { "manager" } else { "worker" };
        s.push_str(&format!("[[nodes]]\nname = \"{prefix}{n}-{i}\"\nrole = \"{role}\"\n\n"));
    }
    s.push_str(&format!(
        "[[networks]]\nname = \"{prefix}-net\"\n\n\
         [[services]]\nname = \"everywhere\"\nmode = \"global\"\n\n\
         [[services]]\nname = \"foo\"\nnetworks = [\"{prefix}-net\"]\nconstraints = [\"node.hostname=={prefix}{n}-2\"]\n\n\
         [[checks]]\nkind = \"placement\"\nservice = \"everywhere\"\n\n\
         [[checks]]\nkind = \"ping-by-name\"\nfrom = \"{prefix}{n}-{n}\"\nnetwork = \"{prefix}-net\"\ntarget = \"foo\"\n"
    ));
    s
}
