-- rule: newly_disabled
-- title: a member newly certified disabled
-- legal basis: Interim Measures for Social Assistance, art. 9; Opinions on improving the social assistance system (2020), severe disability as a category for individual enrolment
-- sources: disability
-- A member of a monitored household certified disabled within the last
-- $disability_window_days days (the most severe grade is reported).
SELECT m.household_id,
       printf('member certified disabled (grade %d) on %s', min(d.grade),
              strftime(max(d.certified_on), '%Y-%m-%d')) AS finding,
       json_object('grade', min(d.grade), 'certified_on', strftime(max(d.certified_on), '%Y-%m-%d'),
                   'members_certified', count(DISTINCT d.person_id)) AS indicators
FROM disability d JOIN members m USING (person_id)
WHERE d.certified_on > $as_of - to_days($disability_window_days::INTEGER)
  AND d.certified_on <= $as_of
GROUP BY m.household_id
