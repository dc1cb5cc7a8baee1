//! Tasks: what they are, how urgent, and the states they move through.

use super::string_enum;

string_enum!(
    /// What kind of work a task is; the kind picks the default capability (queue).
    TaskType {
        PipelineProcessing => "pipeline_processing",
        BiasDetection => "bias_detection",
        Validation => "validation",
        Analysis => "analysis",
        Export => "export",
        Generic => "generic",
    }
);

string_enum!(
    /// Priority tier. Workers take critical before high before medium before low.
    Priority {
        Critical => "critical",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

string_enum!(
    /// Where a task is in its life. Terminal: completed, dead, cancelled.
    TaskStatus {
        Pending => "pending",
        Scheduled => "scheduled",
        Assigned => "assigned",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Dead => "dead",
        Cancelled => "cancelled",
    }
);

impl TaskType {
    /// The capability a task of this type needs when the submitter names none.
    pub fn default_capability(self) -> &'static str {
        self.as_str()
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Dead | TaskStatus::Cancelled
        )
    }

    /// States from which a worker may start running the task. `assigned` is not one of them:
    /// an assigned task is started only by the agent it was assigned to.
    pub const STARTABLE: &'static [TaskStatus] = &[
        TaskStatus::Pending,
        TaskStatus::Scheduled,
        TaskStatus::Failed,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(*p));
        }
        assert_eq!(Priority::parse("urgent"), None);
        assert_eq!(Priority::allowed(), "critical, high, medium, low");
        assert_eq!(
            serde_json::to_string(&TaskType::PipelineProcessing).unwrap(),
            "\"pipeline_processing\""
        );
    }

    #[test]
    fn terminal_states() {
        assert!(TaskStatus::Completed.is_terminal());
        assert!(TaskStatus::Dead.is_terminal());
        assert!(!TaskStatus::Failed.is_terminal());
        assert!(!TaskStatus::STARTABLE.contains(&TaskStatus::Running));
        assert!(!TaskStatus::STARTABLE.contains(&TaskStatus::Assigned));
    }
}
